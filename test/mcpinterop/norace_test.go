//go:build !race

package mcpinterop_test

const raceEnabled = false
