-- The checklist facts of each agent's provenance, one `compliance_evidence` record per
-- (agent, fact), so that compliance status reads at most four rows however many
-- entries an agent has. New entries record their facts as they are written
-- (src/compliance.rs, `record_evidence`); this backfills the entries written before.
-- The same statements serve both dialects.
INSERT INTO records (scope, kind, id, subject, label, created_at_ms, document)
SELECT scope, 'compliance_evidence', subject || ':' || fact, subject, fact,
       MIN(created_at_ms), '{"fact":"' || fact || '","entry_id":"' || MIN(id) || '"}'
FROM (
    SELECT scope, subject, label AS fact, created_at_ms, id
    FROM records
    WHERE kind = 'provenance_entry' AND label IN ('training_data', 'model_lineage')
    UNION ALL
    SELECT scope, subject, 'data_governance', created_at_ms, id
    FROM records
    WHERE kind = 'provenance_entry' AND label = 'training_data'
      AND document NOT LIKE '%"data_governance_measures":""%'
    UNION ALL
    SELECT scope, subject, 'evaluation_metrics', created_at_ms, id
    FROM records
    WHERE kind = 'provenance_entry' AND label = 'model_lineage'
      AND document NOT LIKE '%"evaluation_metrics":{}%'
) AS facts
WHERE subject IS NOT NULL
GROUP BY scope, subject, fact;

INSERT INTO record_refs (record_seq, scope, agent_id)
SELECT seq, scope, subject FROM records WHERE kind = 'compliance_evidence';
