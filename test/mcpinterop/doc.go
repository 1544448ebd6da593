// Package mcpinterop tests kaar's MCP server against independent peers: the
// MCP conformance suite's server scenarios and the MCP Inspector CLI, over
// streamable HTTP and over stdio, and the client configuration snippets of
// the README, run exactly as written.
//
// The peers are npm packages that hack/mcp-tools.sh installs, pinned, into
// .cache/mcp-tools (with their own Node.js 22); the tests run that script
// first, which does nothing once the pinned versions are in place. The tests
// build kaar (go build ./cmd/kaar from the repository root) and start
// "kaar serve" against the sandbox cluster, as a separate process.
//
// testdata/expected-failures.txt lists what is known to fail, each entry with
// the text its failure must show and the reason; a failure not listed, or a
// listed check that passes, fails the tests.
package mcpinterop
