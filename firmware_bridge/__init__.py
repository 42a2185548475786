"""The recorder link: wire protocol, host and recorder ends, transports, simulator."""
