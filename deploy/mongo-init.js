// Runs once, when MongoDB initialises an empty data volume (the official image runs the scripts
// in /docker-entrypoint-initdb.d with mongosh, as the root user of MONGO_INITDB_ROOT_USERNAME).
// It creates the user the services log in as: read and write on the breakerchain database,
// nothing else. The password comes from MONGO_APP_PASSWORD (.env); it is never written here.
const password = process.env.MONGO_APP_PASSWORD;
if (!password) {
  throw new Error('MONGO_APP_PASSWORD is not set');
}
db.getSiblingDB('breakerchain').createUser({
  user: 'breakerchain',
  pwd: password,
  roles: [{ role: 'readWrite', db: 'breakerchain' }],
});
