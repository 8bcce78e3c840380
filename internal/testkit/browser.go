package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// Chromium finds a Chromium to drive. .ci/run installs Debian's and sets
// BREAKERCHAIN_REQUIRE_BROWSER, so CI can never skip a browser test; elsewhere the test is
// skipped, saying why, when none is installed.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BREAKERCHAIN_REQUIRE_BROWSER") != "" {
		t.Fatal("no Chromium installed (apt-get install chromium), and BREAKERCHAIN_REQUIRE_BROWSER is set")
	}
	t.Skip("no Chromium installed: apt-get install chromium to run the browser test (.ci/run does)")
	return ""
}
