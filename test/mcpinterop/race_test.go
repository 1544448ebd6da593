//go:build race

package mcpinterop_test

// raceEnabled: the tests run with -race, so kaar is built with -race too.
const raceEnabled = true
