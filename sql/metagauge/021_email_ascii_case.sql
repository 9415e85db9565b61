-- E-mail addresses are unique case-insensitively in their ASCII letters, on every server: lower() under
-- the database's own collation folds other letters too, or not, depending on the server's LC_CTYPE, so
-- two servers could dedupe the same users differently. The "C" collation makes the rule explicit.
DROP INDEX metagauge.idx_users_email_lower;
CREATE UNIQUE INDEX idx_users_email_lower ON metagauge.users (lower(email COLLATE "C"));
