-- Removes exactly the aliases the up migration added.
UPDATE models SET aliases = ARRAY(
    SELECT alias FROM unnest(models.aliases) AS alias
    WHERE alias <> ALL ('{openai/gpt-5,openai/gpt-5-mini,openai/gpt-5-nano,openai/gpt-4.1,openai/gpt-4.1-mini,chatgpt-4o-latest,openai/gpt-4o,openai/gpt-4o-mini,openai/o3,openai/o4-mini,claude-opus-4.1,claude-4.1-opus,anthropic/claude-opus-4.1,claude-sonnet-4.5,claude-4.5-sonnet,anthropic/claude-sonnet-4.5,claude-sonnet-4-0,claude-4-sonnet,anthropic/claude-sonnet-4,claude-haiku-4.5,claude-4.5-haiku,anthropic/claude-haiku-4.5,claude-3.5-haiku,anthropic/claude-3.5-haiku,google/gemini-2.5-pro,models/gemini-2.5-pro,google/gemini-2.5-flash,models/gemini-2.5-flash,google/gemini-2.0-flash-001,models/gemini-2.0-flash,deepseek/deepseek-chat,deepseek/deepseek-chat-v3,deepseek/deepseek-r1,mistralai/mistral-large}'::text[])
);
