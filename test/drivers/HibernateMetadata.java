// Hibernate ORM's schema extraction for PostgreSQL, replayed through pg-tenant-proxy's catalog filter: what
// hibernate-core's InformationExtractorPostgreSQLImpl (hbm2ddl validate/update) asks pgjdbc and PostgreSQL, in its order
// and with its arguments. The index query is Hibernate's own text, copied verbatim from
// hibernate/hibernate-orm hibernate-core/src/main/java/org/hibernate/tool/schema/extract/internal/InformationExtractorPostgreSQLImpl.java
// at fad1729dce015f908198d57a8d80274a30f905a5 (last changed in b02ab6170e3f7bc0a4a8a8c4796ba497266c65eb), bound with
// setString as Hibernate binds it; the sequence query is PostgreSQLDialect.getQuerySequencesString() at the same commit;
// the table types are AbstractInformationExtractorImpl's TABLE and VIEW plus PostgreSQLDialect.augmentRecognizedTableTypes.
//
// java -cp postgresql.jar HibernateMetadata.java URL USER PASSWORD INIT_SQL SCHEMA...
// Connects to URL (INIT_SQL, when not empty, runs first: the pin of a direct connection) and, for each SCHEMA, prints one
// "SCHEMA.name=[rows]" line per extraction step, every column of every row.
import java.sql.*;
import java.util.*;

public class HibernateMetadata {
  static final String[] TABLE_TYPES = {"TABLE", "VIEW", "MATERIALIZED VIEW", "PARTITIONED TABLE"};

  static String getIndexesSql(String tableSchema) {
		final String sql = """
				select\
					current_database() as "TABLE_CAT",\
					n.nspname as "TABLE_SCHEM",\
					ct.relname as "TABLE_NAME",\
					not i.indisunique as "NON_UNIQUE",\
					null as "INDEX_QUALIFIER",\
					ci.relname as "INDEX_NAME",\
					case i.indisclustered\
						when true then 1\
						else\
							case am.amname\
								when 'hash' then 2\
								else 3\
							end\
					end as "TYPE",\
					ic.n as "ORDINAL_POSITION",\
					ci.reltuples as "CARDINALITY",\
					ci.relpages as "PAGES",\
					pg_catalog.pg_get_expr(i.indpred, i.indrelid) as "FILTER_CONDITION",\
					trim(both '"' from pg_catalog.pg_get_indexdef(ci.oid, ic.n, false)) as "COLUMN_NAME",\
					case am.amname\
						when 'btree' then\
							case i.indoption[ic.n - 1] & 1::smallint\
								when 1 then 'D'\
								else 'A'\
							end\
					end as "ASC_OR_DESC"
				from pg_catalog.pg_class ct
				join pg_catalog.pg_namespace n on (ct.relnamespace = n.oid)
				join pg_catalog.pg_index i on (ct.oid = i.indrelid)
				join pg_catalog.pg_class ci on (ci.oid = i.indexrelid)
				join pg_catalog.pg_am am on (ci.relam = am.oid)
				join information_schema._pg_expandarray(i.indkey) ic on 1=1
				""";
    return sql + (tableSchema == null ? "" : " where n.nspname = ?");
  }

  static List<String> rows(ResultSet rs) throws SQLException {
    List<String> out = new ArrayList<>();
    ResultSetMetaData md = rs.getMetaData();
    while (rs.next()) {
      StringBuilder row = new StringBuilder();
      for (int i = 1; i <= md.getColumnCount(); i++) {
        if (i > 1) row.append('|');
        row.append(md.getColumnLabel(i)).append(':').append(rs.getString(i));
      }
      out.add(row.toString());
    }
    rs.close();
    return out;
  }

  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.setProperty("user", args[1]);
    p.setProperty("password", args[2]);
    p.setProperty("sslmode", "disable");
    try (Connection c = DriverManager.getConnection(args[0], p)) {
      if (!args[3].isEmpty()) try (Statement s = c.createStatement()) { s.execute(args[3]); }
      DatabaseMetaData md = c.getMetaData();
      for (String schema : Arrays.copyOfRange(args, 4, args.length)) {
        // DatabaseInformationImpl: does the namespace exist (getSchemas), then the bulk extraction of its tables with
        // their columns, primary keys, foreign keys and indexes.
        System.out.println(schema + ".schemas=" + rows(md.getSchemas(null, schema)));
        System.out.println(schema + ".tables=" + rows(md.getTables(null, schema, "%", TABLE_TYPES)));
        System.out.println(schema + ".columns=" + rows(md.getColumns(null, schema, null, "%")));
        // The bulk primary and foreign keys name the namespace's catalog: the JDBC environment's current one.
        System.out.println(schema + ".primaryKeys=" + rows(md.getPrimaryKeys(c.getCatalog(), schema, null)));
        System.out.println(schema + ".foreignKeys=" + rows(md.getImportedKeys(c.getCatalog(), schema, null)));
        try (PreparedStatement ps = c.prepareStatement(getIndexesSql(schema))) {
          ps.setString(1, schema);
          System.out.println(schema + ".indexes=" + rows(ps.executeQuery()));
        }
      }
      // Then the sequences, all of them at once (SequenceInformationExtractorLegacyImpl).
      try (Statement s = c.createStatement()) {
        System.out.println("sequences=" + rows(s.executeQuery("select * from information_schema.sequences")));
      }
    }
  }
}
