-- Parallel run: a wallet whose file the legacy application deleted is kept, marked deleted
-- (seed 000, deleteWallet: "Soft delete (recommended)"), and gets a 'deleted' audit row.
ALTER TABLE wallet.wallets ADD COLUMN deleted_at timestamptz;
