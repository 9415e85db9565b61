-- The application finds a wallet by address case-insensitively (addresses are stored in EIP-55 mixed case):
-- lower(address) = lower($1) was a parallel sequential scan of the whole table.
CREATE INDEX idx_wallets_address_lower ON wallet.wallets (lower(address));
