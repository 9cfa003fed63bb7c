"""The ledger's HTTP API (SPEC 6), one module per resource: `assets`, `transactions`, `wallets`
(the organization half of `/wallets` and the lifecycle endpoints). `common` holds who may ask
and the shared OpenAPI parts. Views validate input, call one service or selector, serialize."""
