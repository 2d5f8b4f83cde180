"""Platform: orgs, users, roles, data scope, personal-data protection, audit."""
