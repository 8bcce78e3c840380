package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	_ "modernc.org/sqlite" // FerretDB's own SQLite driver, as database/sql "sqlite"
)

// What the _id index relies on, all of it FerretDB's internals, read in its source at this
// version (internal/backends/sqlite): an upgrade must check each again, and TestIDIndex fails
// until someone has (it pins the version).
//
//   - Each database is one SQLite file, <dir>/<database>.sqlite.
//   - Collections are tables, named in the table _ferretdb_collections (name → table_name).
//   - A find, update or delete by _id alone filters on _ferretdb_sjson->'$._id' = ?
//     (metadata.IDColumn). FerretDB's own unique _id index is on _ferretdb_sjson->"_id", an
//     expression SQLite does not match to that filter, so without ours every lookup by _id scans
//     the table, and grows with it (docs/BENCHMARKS.md).
const (
	FerretDBVersion   = "v1.24.2"
	ferretIDFilter    = `_ferretdb_sjson->'$._id'`
	ferretCollections = "_ferretdb_collections"
	idIndexPrefix     = "breakerchain_id_" // FerretDB's own index names start with the table's
)

// IndexIDs gives each of collections in database db an index on exactly the expression
// FerretDB's lookups by _id filter on, creating the collections that do not exist yet. It is
// idempotent, and only for the embedded store: a real MongoDB indexes _id itself.
func (s *Store) IndexIDs(ctx context.Context, db string, collections ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(s.uri).SetServerSelectionTimeout(5 * time.Second))
	if err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	defer func() { _ = c.Disconnect(context.Background()) }()
	for _, name := range collections {
		err := c.Database(db).CreateCollection(ctx, name)
		var ce mongo.CommandError
		if err != nil && !(errors.As(err, &ce) && ce.Code == 48) { // 48: NamespaceExists
			return fmt.Errorf("embedded store: create %s.%s: %w", db, name, err)
		}
	}

	f, err := sql.Open("sqlite", "file:"+filepath.Join(s.dir, db+".sqlite")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	defer f.Close()
	for _, name := range collections {
		var table string
		q := fmt.Sprintf("SELECT table_name FROM %q WHERE name = ?", ferretCollections)
		if err := f.QueryRowContext(ctx, q, name).Scan(&table); err != nil {
			return fmt.Errorf("embedded store: the table of %s.%s: %w", db, name, err)
		}
		q = fmt.Sprintf("CREATE INDEX IF NOT EXISTS %q ON %q (%s)", idIndexPrefix+table, table, ferretIDFilter)
		if _, err := f.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("embedded store: index %s.%s: %w", db, name, err)
		}
	}
	return nil
}
