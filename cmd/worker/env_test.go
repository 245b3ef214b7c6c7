package main

import (
	"strings"
	"testing"
)

// testEnv is an Environment with the given variables, as a non-root user.
func testEnv(vars map[string]string) Environment {
	return Environment{Getenv: func(k string) string { return vars[k] }, UID: 1000}
}

func TestDefaultDataDir(t *testing.T) {
	tests := []struct {
		name string
		env  Environment
		want string
	}{
		{"root", Environment{Getenv: func(string) string { return "" }, UID: 0}, "/var/lib/brr"},
		{"xdg", testEnv(map[string]string{"XDG_DATA_HOME": "/x/data", "HOME": "/home/u"}), "/x/data/brr"},
		{"relative xdg ignored", testEnv(map[string]string{"XDG_DATA_HOME": "data", "HOME": "/home/u"}), "/home/u/.local/share/brr"},
		{"home", testEnv(map[string]string{"HOME": "/home/u"}), "/home/u/.local/share/brr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := defaultDataDir(tt.env)
			if err != nil {
				t.Fatalf("defaultDataDir: %v", err)
			}
			if got != tt.want {
				t.Fatalf("defaultDataDir = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := defaultDataDir(testEnv(nil)); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("defaultDataDir without HOME = %v, want an error that says how to set it", err)
	}
}
