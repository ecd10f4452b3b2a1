-- A certificate change that a metadata refresh found, held for an admin's decision (unless the
-- new metadata was signed by a key the connection already trusts). Until approved, the
-- connection keeps its certificates. One hold per connection: a newer change replaces it; a
-- rejected change stays recorded so the same certificates are not raised again.
CREATE TABLE saml_certificate_holds (
    connection_id  TEXT PRIMARY KEY REFERENCES saml_connections(id) ON DELETE CASCADE,
    org_id         TEXT NOT NULL REFERENCES orgs(id),
    metadata_xml   TEXT NOT NULL,
    certificates   TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('pending', 'rejected')),
    found_at       BIGINT NOT NULL,
    decided_at     BIGINT NULL
);
