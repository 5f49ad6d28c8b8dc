-- Unit prices of every price-list version (yuan per day; Decimal(18, 4)), for the version_id of each
-- run of assessment_lines.sql: fetched once here instead of with each of the (many) runs. Versions are
-- append-only rows, never updated, so this is the same price the runs were chosen by.
SELECT version_id, vcpu_day, mem_gb_day, storage_gb_day
FROM price_versions
