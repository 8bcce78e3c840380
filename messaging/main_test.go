package messaging_test

import (
	"encoding/json"
	"testing"

	"github.com/breakerchain/breakerchain/internal/testkit"
)

func TestMain(m *testing.M) { testkit.Main(m) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
