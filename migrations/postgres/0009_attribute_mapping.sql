-- Attribute mapping per SSO connection: where the display name (or the given and family
-- names) come from, beside the existing email attribute. NULL: not mapped.

ALTER TABLE saml_connections ADD COLUMN name_attribute TEXT NULL;
ALTER TABLE saml_connections ADD COLUMN given_name_attribute TEXT NULL;
ALTER TABLE saml_connections ADD COLUMN family_name_attribute TEXT NULL;
