"""Customer movements: one module per kind of movement a user starts (deposits, transfers,
withdrawals with their payouts, currency exchange), and an organization's (`POST /transactions`,
authorization holds, reversals).

Invariants:
* Each entry point validates its input and authorizes it, then runs the money path
  (`wallets.pipeline.money_path`); nothing here writes a balance, a hold or an entry.
* The source wallet (the deposit's wallet, the quote's wallets) must be the caller's own
  (`wallets.selectors.wallet_get_for_user`: anyone else's is a 404 and nothing moves); a
  transfer may go to any active customer wallet.
* Limits are checked for the CALLER'S OWN customer only, in the direction the money moves for
  them: deposits incoming; transfers, withdrawals and exchanges outgoing (an exchange also
  incoming, in the destination asset). The recipient of a transfer is not checked at send time
  (that would lock and disclose another customer's limit state to the sender), but the transfer
  counts toward their incoming usage. A transfer between the caller's own wallets is neither
  limited nor risk-screened; it still needs the step-up code at the threshold.
"""
