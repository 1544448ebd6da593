package planner

import "testing"

func TestFindLogCause(t *testing.T) {
	cases := []struct {
		name      string
		lines     []string
		line, env string
		file      string
		none      bool
	}{
		{name: "env var, required ... is not set", lines: []string{"starting", logMissingEnv},
			line: logMissingEnv, env: "DATABASE_URL"},
		{name: "env var, must be set", lines: []string{"boot", "fatal: API_KEY must be set", "exiting"},
			line: "fatal: API_KEY must be set", env: "API_KEY"},
		{name: "env var, shell unbound variable", lines: []string{"/entrypoint.sh: line 3: REDIS_HOST: unbound variable"},
			line: "/entrypoint.sh: line 3: REDIS_HOST: unbound variable", env: "REDIS_HOST"},
		{name: "env var, missing env var", lines: []string{"panic: missing env var SMTP_PASSWORD"},
			line: "panic: missing env var SMTP_PASSWORD", env: "SMTP_PASSWORD"},
		{name: "file, open ...: no such file", lines: []string{"loading configuration", logMissingFile, "shutting down"},
			line: logMissingFile, file: "/etc/payments/settings.yaml"},
		{name: "file, python", lines: []string{"Traceback (most recent call last):", "FileNotFoundError: [Errno 2] No such file or directory: '/app/config.json'"},
			line: "FileNotFoundError: [Errno 2] No such file or directory: '/app/config.json'", file: "/app/config.json"},
		{name: "the line naming what is missing wins over a later generic error",
			lines: []string{"Error: required environment variable DATABASE_URL is not set", "error: exiting with status 1"},
			line:  "Error: required environment variable DATABASE_URL is not set", env: "DATABASE_URL"},
		{name: "generic error, the last one", lines: []string{"error: first", "connecting", "panic: db connection refused"},
			line: "panic: db connection refused"},
		{name: "a log that just stops", lines: []string{"loading model", "loaded 40%"}, none: true},
		{name: "withheld lines are not a cause", lines: []string{redactedLine}, none: true},
		{name: "upper-case words are not variables", lines: []string{"ERROR: HTTP request failed"}, line: "ERROR: HTTP request failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := findLogCause(tc.lines)
			if tc.none {
				if ok {
					t.Fatalf("found %+v, want none", c)
				}
				return
			}
			if !ok || c.Line != tc.line || c.EnvVar != tc.env || c.File != tc.file {
				t.Errorf("findLogCause = %+v %v, want line %q env %q file %q", c, ok, tc.line, tc.env, tc.file)
			}
		})
	}
}
