"""What host plug-ins share with the server: contract, client, frame marshalling."""
