"""Proxy projects: a pull-through cache of an upstream registry that verifies the upstream's signatures
under the project's policy before anything is stored or served (README "Proxy projects")."""
