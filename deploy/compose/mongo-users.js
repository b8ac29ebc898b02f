// One database user per service, allowed to read and write its own database only: no
// service can read another's. Run by the `mongo-users` one-shot of docker-compose.yml
// (mongosh --file), as the database administrator. Safe to run again: a user that exists
// gets its password and roles set anew, which is how passwords are rotated.
//
// Every credential comes from the environment (never the command line):
//   MONGO_ADMIN_USER, MONGO_ADMIN_PASSWORD   the administrator
//   RELIEF_MONGO_PASSWORD_<SERVICE>          each service's password
//   RELIEF_DB_PREFIX                         database names are <prefix><service>

// the services of services/common/topology.py (tests/unit/test_compose.py checks the list)
const SERVICES = ["intake", "donations", "volunteers", "matching", "notifications",
                  "accounting", "gateway"];

const env = process.env;
db.getSiblingDB("admin").auth(env.MONGO_ADMIN_USER, env.MONGO_ADMIN_PASSWORD);
const prefix = env.RELIEF_DB_PREFIX || "relief_";

for (const service of SERVICES) {
  const variable = `RELIEF_MONGO_PASSWORD_${service.toUpperCase()}`;
  const password = env[variable];
  if (!password) {
    throw new Error(`${variable} is not set`);
  }
  const user = `relief-${service}`;
  const name = prefix + service;
  const database = db.getSiblingDB(name);
  const roles = [{role: "readWrite", db: name}];
  if (database.getUser(user)) {
    database.updateUser(user, {pwd: password, roles: roles});
  } else {
    database.createUser({user: user, pwd: password, roles: roles});
  }
  print(`mongo-users: ${user} may read and write ${name} only`);
}
