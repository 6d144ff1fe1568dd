"""``melo``: the command-line client. Commands drive the SDK (melo_protocol.client); no HTTP here."""
