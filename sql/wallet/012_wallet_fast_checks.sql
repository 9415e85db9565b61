-- The same rules as 010's address and iv CHECKs, written so PostgreSQL checks them ten times faster:
-- its regex engine is slow on a long bounded repetition such as {40} (1.2 s to validate 200k staged
-- rows; 0.1 s as a '+' class plus an exact length). Staged tables copy these from the live catalog.
ALTER TABLE wallet.wallets
    DROP CONSTRAINT wallets_address_check,
    ADD CONSTRAINT wallets_address_check CHECK (address ~ '^0x[a-fA-F0-9]+$' AND length(address) = 42),
    DROP CONSTRAINT wallets_iv_check,
    ADD CONSTRAINT wallets_iv_check CHECK (iv ~ '^[0-9a-fA-F]+$' AND length(iv) = 32);
