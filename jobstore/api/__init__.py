"""The api.job module's functions, faithful to their camelCase names: ``from jobstore.api import job``."""
