// pgjdbc DatabaseMetaData through pg-tenant-proxy's catalog filter:
// `java -cp postgresql.jar JdbcMetadata.java PORT DATABASE TOKEN SCHEMA TABLE`. Prints one "name=result" line each.
import java.sql.*;
import java.util.*;

public class JdbcMetadata {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.setProperty("user", "app");
    p.setProperty("password", args[2]);
    p.setProperty("sslmode", "disable");
    String schema = args[3], table = args[4];
    try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + args[0] + "/" + args[1], p)) {
      DatabaseMetaData md = c.getMetaData();
      List<String> tables = new ArrayList<>();
      try (ResultSet rs = md.getTables(null, null, "%", new String[] {"TABLE", "VIEW"})) {
        while (rs.next()) tables.add(rs.getString("TABLE_SCHEM") + "." + rs.getString("TABLE_NAME"));
      }
      System.out.println("tables=" + tables);
      List<String> columns = new ArrayList<>();
      try (ResultSet rs = md.getColumns(null, schema, table, "%")) {
        while (rs.next()) columns.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getString("COLUMN_DEF"));
      }
      System.out.println("columns=" + columns);
      List<String> keys = new ArrayList<>();
      try (ResultSet rs = md.getPrimaryKeys(null, schema, table)) {
        while (rs.next()) keys.add(rs.getString("COLUMN_NAME") + "@" + rs.getString("PK_NAME"));
      }
      System.out.println("primaryKeys=" + keys);
      List<String> schemas = new ArrayList<>();
      try (ResultSet rs = md.getSchemas()) {
        while (rs.next()) schemas.add(rs.getString("TABLE_SCHEM"));
      }
      System.out.println("schemas=" + schemas);
      List<String> functions = new ArrayList<>();
      try (ResultSet rs = md.getFunctions(null, null, "%")) {
        while (rs.next()) if (!"pg_catalog".equals(rs.getString("FUNCTION_SCHEM")) && !"information_schema".equals(rs.getString("FUNCTION_SCHEM"))) functions.add(rs.getString("FUNCTION_SCHEM") + "." + rs.getString("FUNCTION_NAME"));
      }
      System.out.println("functions=" + functions);
      List<String> indexes = new ArrayList<>();
      try (ResultSet rs = md.getIndexInfo(null, schema, table, false, false)) {
        while (rs.next()) if (rs.getString("INDEX_NAME") != null) indexes.add(rs.getString("INDEX_NAME"));
      }
      System.out.println("indexes=" + indexes);
    }
  }
}
