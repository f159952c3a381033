"""OPC UA source (``type: opcua``): reads a DCS or PLC over OPC UA with asyncua (README.md)."""
