package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The _id index works on the FerretDB this module builds with: for a collection that had
// documents before and one that did not exist yet, SQLite's plan for the filter FerretDB's lookups
// by _id use is an index SEARCH, not a SCAN; IndexIDs may run again; and a find by _id through
// FerretDB still finds its document. An upgrade of FerretDB fails here until the pins in
// index.go were checked against its source again.
func TestIDIndex(t *testing.T) {
	if v := moduleVersion(t, "github.com/FerretDB/FerretDB"); v != FerretDBVersion {
		t.Fatalf("FerretDB %s, the index was checked against %s: read its internal/backends/sqlite again (database files, %s, metadata.IDColumn) and update index.go",
			v, FerretDBVersion, ferretCollections)
	}
	dir := t.TempDir()
	s, err := StartStore("127.0.0.1:0", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(s.URI()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Disconnect(ctx) }()
	existing := c.Database("shop").Collection("existing")
	for i := range 100 {
		if _, err := existing.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("doc-%d", i)}}); err != nil {
			t.Fatal(err)
		}
	}

	for range 2 { // idempotent
		if err := s.IndexIDs(ctx, "shop", "existing", "new"); err != nil {
			t.Fatal(err)
		}
	}

	f, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "shop.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"existing", "new"} {
		var table string
		if err := f.QueryRow(fmt.Sprintf("SELECT table_name FROM %q WHERE name = ?", ferretCollections), name).Scan(&table); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		plan := queryPlan(t, f, fmt.Sprintf("SELECT _ferretdb_sjson FROM %q WHERE %s = ?", table, ferretIDFilter))
		if !strings.Contains(plan, "SEARCH") || !strings.Contains(plan, idIndexPrefix+table) {
			t.Errorf("%s: plan %q, want a SEARCH using %s", name, plan, idIndexPrefix+table)
		}
	}
	var doc bson.M
	if err := existing.FindOne(ctx, bson.D{{Key: "_id", Value: "doc-42"}}).Decode(&doc); err != nil || doc["_id"] != "doc-42" {
		t.Errorf("find by _id after the index: %v %v", doc, err)
	}
}

func queryPlan(t *testing.T, f *sql.DB, q string) string {
	t.Helper()
	rows, err := f.Query("EXPLAIN QUERY PLAN "+q, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return strings.Join(plan, "; ")
}

// moduleVersion is the version go.mod requires of module path.
func moduleVersion(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == path {
			return f[1]
		}
	}
	return ""
}
