-- Autovacuum visits the event partitions when they have doubled, not at PostgreSQL's 10 %
-- (analyze) and 20 % (vacuum after inserts) of growth.
--
-- Each visit rewrites the partition's statistics in pg_class, and that invalidates every
-- cached plan that names the partition, in every session: every plan over `events`, since a
-- generic plan names all sixteen partitions. A pass over the sixteen partitions therefore had
-- every connection plan its statements again, up to thirty-two times within seconds; the
-- bench saw projection lag jump from ~40 ms to ~150 ms for as long as the pass lasted. The
-- partitions are append-only, so vacuum has no dead rows to reclaim, and the statements that
-- read them look events up by key, so fresher statistics do not change their plans.
-- (Anti-wraparound vacuums still run on PostgreSQL's own schedule.)
DO $$
DECLARE
    partition regclass;
BEGIN
    FOR partition IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'events'::regclass
    LOOP
        EXECUTE format(
            'ALTER TABLE %s SET (autovacuum_analyze_scale_factor = 1.0, '
            'autovacuum_vacuum_insert_scale_factor = 1.0)', partition);
    END LOOP;
END
$$;
