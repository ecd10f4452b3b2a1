-- A parked IdP-initiated sign-in is found by its handle's key (`secrets::token_key`): for the
-- handles made from now on, the time the handle was made, a dot and the hash of the whole
-- handle, so that new rows arrive at the end of the key's index instead of at a random page of
-- it; for a handle made before, its hash alone, as stored until now.
ALTER TABLE saml_pending_sign_ins RENAME COLUMN handle_hash TO handle_key;
