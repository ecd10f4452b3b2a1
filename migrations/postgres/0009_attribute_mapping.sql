-- Attribute mapping per SSO connection: where the display name (or the given and family
-- names) come from, beside the existing email attribute (NULL: not mapped); and whether the
-- connection requires encrypted assertions (0/1).

ALTER TABLE saml_connections ADD COLUMN name_attribute TEXT NULL;
ALTER TABLE saml_connections ADD COLUMN given_name_attribute TEXT NULL;
ALTER TABLE saml_connections ADD COLUMN family_name_attribute TEXT NULL;
ALTER TABLE saml_connections ADD COLUMN require_encrypted_assertions BIGINT NOT NULL DEFAULT 0;
