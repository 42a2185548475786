"""The link's sizes and bounds (docs/protocol.md sections 1 and 4), apart from the codec
so that the settings can check them without loading it."""

UART_MAX_CHUNK = 1024  # a bit error on a UART costs one chunk
USB_MAX_CHUNK = 16384  # bulk transfers are checked in hardware
MAX_CHUNK_LIMIT = 65535  # the largest chunk either side may ever negotiate (u16)
MIN_CHUNK = 16  # the smallest chunk the host negotiates
MAX_CHUNKS_PER_FRAME = 4096
