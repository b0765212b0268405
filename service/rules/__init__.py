"""The rules engine: rule sets as data, evaluated into explained postings."""
