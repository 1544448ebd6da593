claude mcp add --transport stdio kaar -- kaar mcp --stdio --nats-url nats://127.0.0.1:4222
claude mcp add --transport http kaar-http http://127.0.0.1:8000/mcp --header "Authorization: Bearer ${KAAR_TOKEN}"
