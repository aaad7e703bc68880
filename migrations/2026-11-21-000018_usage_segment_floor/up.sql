-- The latest segment start usage counters had been keyed by when the
-- subscription's stored period last changed. A period that goes away
-- (cancelled, or a plan assigned by staff) must not send counters back to
-- earlier rows: recording keys rows by segment starts that only move
-- forward (see src/usage/windows.rs), and this keeps them from going below
-- what was already recorded.
ALTER TABLE subscriptions ADD COLUMN usage_segment_floor timestamptz;

-- Subscriptions whose period already went keep the segments they used.
UPDATE subscriptions s SET usage_segment_floor = (
    SELECT max(c.window_start) FROM usage_counters c
    WHERE c.organization_id = s.organization_id AND c.subject_kind = 'ORGANIZATION'
      AND c.subject_id = s.organization_id
);
