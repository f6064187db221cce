"""Ways in besides Anthropic Messages: Bedrock, Vertex and OpenAI Chat Completions shapes.
Each door rewrites its request as a Messages request, then governs and dispatches it exactly
as the native door does; only the wire shape differs (see docs/architecture.md)."""
