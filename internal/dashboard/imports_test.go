package dashboard_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsNoService keeps the dashboard beside the services, not above them: it reads what
// they show on the bus (internal/observe, messaging, internal/chaos) and imports no service, nor
// what runs them. A service is any package of the module outside messaging and internal/ (order,
// payment, shipment, a fourth one's folder); internal/service and internal/allinone run them.
func TestImportsNoService(t *testing.T) {
	const module = "github.com/breakerchain/breakerchain/"
	for _, pkg := range []string{".", "../observe"} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			rest, ours := strings.CutPrefix(dep, module)
			if !ours {
				continue
			}
			lower := rest == "messaging" || strings.HasPrefix(rest, "internal/") &&
				rest != "internal/service" && rest != "internal/allinone"
			if !lower {
				t.Errorf("%s imports %s: the dashboard and what it reads must import no service and nothing that runs one", pkg, dep)
			}
		}
	}
}
