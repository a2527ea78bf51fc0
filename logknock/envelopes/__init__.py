"""The envelope parsers behind `logknock.envelope.parse`, one module per family.

`stamps` reads timestamps; `kernel` reads /dev/kmsg records and dmesg output;
`journal` reads journal entries; `syslog` reads syslog daemons' files,
journalctl's text output and ulogd's LOGEMU files. Each parser returns an
`Envelope`, a `Rejection`, or None when the line is not in its form.
"""
