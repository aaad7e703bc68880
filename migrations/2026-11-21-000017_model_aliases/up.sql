-- Other names LLM tools report for the seeded models. Dated versions
-- (gpt-4o-2024-08-06, claude-sonnet-4-20250514, ...-latest) already match
-- by prefix; aliases cover the names that do not start with the id: dotted
-- version numbers, OpenRouter's provider/model ids, and renamed aliases.
UPDATE models SET aliases = aliases || v.extra
FROM (VALUES
    ('gpt-5',             '{openai/gpt-5}'::text[]),
    ('gpt-5-mini',        '{openai/gpt-5-mini}'),
    ('gpt-5-nano',        '{openai/gpt-5-nano}'),
    ('gpt-4.1',           '{openai/gpt-4.1}'),
    ('gpt-4.1-mini',      '{openai/gpt-4.1-mini}'),
    ('gpt-4o',            '{chatgpt-4o-latest,openai/gpt-4o}'),
    ('gpt-4o-mini',       '{openai/gpt-4o-mini}'),
    ('o3',                '{openai/o3}'),
    ('o4-mini',           '{openai/o4-mini}'),
    ('claude-opus-4-1',   '{claude-opus-4.1,claude-4.1-opus,anthropic/claude-opus-4.1}'),
    ('claude-sonnet-4-5', '{claude-sonnet-4.5,claude-4.5-sonnet,anthropic/claude-sonnet-4.5}'),
    ('claude-sonnet-4',   '{claude-sonnet-4-0,claude-4-sonnet,anthropic/claude-sonnet-4}'),
    ('claude-haiku-4-5',  '{claude-haiku-4.5,claude-4.5-haiku,anthropic/claude-haiku-4.5}'),
    ('claude-3-5-haiku',  '{claude-3.5-haiku,anthropic/claude-3.5-haiku}'),
    ('gemini-2.5-pro',    '{google/gemini-2.5-pro,models/gemini-2.5-pro}'),
    ('gemini-2.5-flash',  '{google/gemini-2.5-flash,models/gemini-2.5-flash}'),
    ('gemini-2.0-flash',  '{google/gemini-2.0-flash-001,models/gemini-2.0-flash}'),
    ('deepseek-chat',     '{deepseek/deepseek-chat,deepseek/deepseek-chat-v3}'),
    ('deepseek-reasoner', '{deepseek/deepseek-r1}'),
    ('mistral-large',     '{mistralai/mistral-large}')
) AS v(id, extra)
WHERE models.id = v.id
  AND NOT (models.aliases && v.extra);
