-- Resource classes (计费类别, §6): the billing standard may price classes of resources differently
-- (price_versions.resource_class, 0009). lifecycle.v1 events may name the resource's class
-- (optional field resource_class; a new resource without one is 'standard').
--
-- lifecycle_events.resource_class: the class the event set, '' when it named none (unchanged).
-- The assessment reads the class in force on each day from this log (sql/reports/assessment_lines.sql).
ALTER TABLE lifecycle_events ADD COLUMN IF NOT EXISTS resource_class LowCardinality(String) DEFAULT '';

-- inventory.resource_class: the resource's current class. Rows written before this migration
-- (and by writers that do not know the column) read as 'standard'.
ALTER TABLE inventory ADD COLUMN IF NOT EXISTS resource_class LowCardinality(String) DEFAULT 'standard';
