"""The money path (SPEC 4): the one pipeline every money movement runs. See `moneypath.pipeline`."""
