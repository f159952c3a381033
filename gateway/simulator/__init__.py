"""Plant simulator: Modbus servers and MQTT publishers that play a site config."""
