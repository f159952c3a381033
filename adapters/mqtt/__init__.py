"""MQTT source adapter (aiomqtt on paho-mqtt 2.x): see README.md in this folder."""
