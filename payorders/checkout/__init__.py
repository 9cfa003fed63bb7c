"""The hosted checkout page `/pay/<public id>` (SPEC 9): `services` (what the page shows and the
two things a payer can do), `views` (the page and its JSON endpoints), `urls` (mounted at /pay/).
An edge: it reads through payorders.selectors and writes only through payorders.services."""
