"""The server-rendered merchant dashboard (SPEC 9): an edge over accounts, ledger and payorders.

Invariants (details in access.py):
- Every page acts for one organization, a membership of the logged-in user; another
  organization's object is a 404, a refused role a 403 page.
- The dashboard writes nothing itself: it calls the services (which audit); state-changing
  requests are POSTs behind Django's CSRF protection.
- A secret (API key, webhook signing secret) appears only in the response to the POST that
  created it, marked `Cache-Control: no-store`.
- Money is Decimal end to end, rendered by `core.money.format_amount`: exact in the CSV, and for
  people through the `amount` template filter (no trailing zeros past two decimals).
- An action that moves money (a refund) runs once per form token through the API's idempotency
  layer (`core.idempotency`), with the API's endpoint name and the organization's key scope.
"""
