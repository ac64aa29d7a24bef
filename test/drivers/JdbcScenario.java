// pgjdbc through pg-tenant-proxy: run with `java -cp postgresql.jar JdbcScenario.java PORT TOKEN_A TOKEN_B SUFFIX`.
// Prints one "name=result" line per scenario; test/integration/drivers.test.ts asserts them.
import java.sql.*;
import java.io.*;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;
import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class JdbcScenario {
  static String port;

  static Connection connect(String token) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", "app");
    p.setProperty("password", token);
    p.setProperty("sslmode", "disable");
    // Server-side prepared statements from the first execution on, as JDBC applications get after the fifth.
    p.setProperty("prepareThreshold", "1");
    return DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + port + "/pgtp_test", p);
  }

  static void report(String name, Object result) {
    System.out.println(name + "=" + result);
  }

  public static void main(String[] args) throws Exception {
    port = args[0];
    String tokenA = args[1], tokenB = args[2], suffix = args[3];

    // 1. Named server-side statements reused across transactions by 16 connections of two tenants.
    ExecutorService pool = Executors.newFixedThreadPool(16);
    List<Future<String>> runs = new ArrayList<>();
    for (int t = 0; t < 16; t++) {
      final boolean isA = t % 2 == 0;
      final String token = isA ? tokenA : tokenB;
      runs.add(pool.submit(() -> {
        try (Connection c = connect(token)) {
          c.setAutoCommit(false);
          PreparedStatement ps = c.prepareStatement("SELECT current_schema(), count(*) FROM items WHERE id <= ?");
          for (int i = 0; i < 60; i++) {
            ps.setInt(1, 3);
            try (ResultSet rs = ps.executeQuery()) {
              rs.next();
              String schema = rs.getString(1);
              long n = rs.getLong(2);
              if (!schema.equals(isA ? "tenant_a" : "tenant_b") || n != (isA ? 2 : 3)) return "wrong " + schema + " " + n;
            }
            c.commit();
          }
          return ps.unwrap(PGStatement.class).isUseServerPrepare() ? "ok" : "not server-prepared";
        }
      }));
    }
    Map<String, Integer> outcomes = new TreeMap<>();
    for (Future<String> f : runs) {
      String r;
      try { r = f.get(120, TimeUnit.SECONDS); } catch (ExecutionException e) { r = "error " + e.getCause(); }
      outcomes.merge(r, 1, Integer::sum);
    }
    pool.shutdown();
    report("prepared", outcomes);

    try (Connection c = connect(tokenA)) {
      Statement st = c.createStatement();
      String table = "jdbc_" + suffix;
      st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, v text, b bytea)");
      try {
        // 2. A batch with an error in the middle: nothing of it stays; a good batch after it commits whole.
        c.setAutoCommit(false);
        PreparedStatement ins = c.prepareStatement("INSERT INTO " + table + " (id, v) VALUES (?, ?)");
        for (int id : new int[] {1, 2, 2, 3}) { ins.setInt(1, id); ins.setString(2, "v" + id); ins.addBatch(); }
        String batchError = "none";
        try { ins.executeBatch(); } catch (BatchUpdateException e) { batchError = e.getSQLState(); }
        c.rollback();
        for (int id = 1; id <= 100; id++) { ins.setInt(1, id); ins.setString(2, "v" + id); ins.addBatch(); }
        ins.executeBatch();
        c.commit();
        c.setAutoCommit(true);
        try (ResultSet rs = st.executeQuery("SELECT count(*) FROM " + table)) { rs.next(); report("batch", batchError + " then " + rs.getLong(1)); }

        // 3. Cancel a long statement; the connection stays usable.
        Statement sleeper = c.createStatement();
        Thread canceller = new Thread(() -> { try { Thread.sleep(300); sleeper.cancel(); } catch (Exception ignored) {} });
        long started = System.nanoTime();
        canceller.start();
        String cancelState = "not cancelled";
        try { sleeper.execute("SELECT pg_sleep(10)"); } catch (SQLException e) { cancelState = e.getSQLState(); }
        canceller.join();
        long ms = (System.nanoTime() - started) / 1_000_000;
        try (ResultSet rs = st.executeQuery("SELECT 41 + 1")) { rs.next(); report("cancel", cancelState + " fast=" + (ms < 5000) + " after=" + rs.getInt(1)); }

        // 4. COPY in and out.
        CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
        StringBuilder rows = new StringBuilder();
        for (int id = 1000; id < 11000; id++) rows.append(id).append('\t').append("copied-").append(id).append('\n');
        long copiedIn = copy.copyIn("COPY " + table + " (id, v) FROM STDIN", new ByteArrayInputStream(rows.toString().getBytes(StandardCharsets.UTF_8)));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        long copiedOut = copy.copyOut("COPY (SELECT id, v FROM " + table + " WHERE id >= 1000 ORDER BY id) TO STDOUT", out);
        report("copy", copiedIn + " " + copiedOut + " same=" + out.toString(StandardCharsets.UTF_8).equals(rows.toString()));

        // 5. A 10 MB bytea round trip.
        byte[] big = new byte[10 * 1024 * 1024];
        new Random(7).nextBytes(big);
        PreparedStatement put = c.prepareStatement("UPDATE " + table + " SET b = ? WHERE id = 1");
        put.setBytes(1, big);
        put.executeUpdate();
        try (ResultSet rs = st.executeQuery("SELECT b FROM " + table + " WHERE id = 1")) { rs.next(); report("bytea", Arrays.equals(big, rs.getBytes(1))); }

        // 6. Notices reach the connection that raised them.
        Statement noisy = c.createStatement();
        noisy.execute("DO $$ BEGIN RAISE NOTICE 'hello from %', current_schema(); END $$");
        SQLWarning w = noisy.getWarnings();
        report("notice", w == null ? "none" : w.getMessage());

        // 7. The guard answers JDBC like PostgreSQL would.
        String refused = "allowed";
        try { st.executeQuery("SELECT count(*) FROM tenant_b.items"); } catch (SQLException e) { refused = e.getSQLState(); }
        report("refused", refused);
      } finally {
        c.setAutoCommit(true);
        st.execute("DROP TABLE IF EXISTS " + table);
      }
    }
  }
}
