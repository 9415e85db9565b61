-- A base-account wallet without a key still carries the iv the application wrote: it is kept as it
-- came (LEGACY_FORMATS 1). What the data guarantees is only that a key comes with its iv.
ALTER TABLE wallet.wallets
    DROP CONSTRAINT wallets_check,
    ADD CONSTRAINT wallets_key_has_iv CHECK (encrypted_private_key IS NULL OR iv IS NOT NULL);
