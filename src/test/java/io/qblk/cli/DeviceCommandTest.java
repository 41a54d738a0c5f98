package io.qblk.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.sun.net.httpserver.HttpServer;
import io.quarkus.test.junit.main.LaunchResult;
import io.quarkus.test.junit.main.QuarkusMainLauncher;
import io.quarkus.test.junit.main.QuarkusMainTest;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** {@code qblk device ...} against a stand-in service: requests sent, tables and JSON printed, errors on one line. */
@QuarkusMainTest
class DeviceCommandTest {
    static HttpServer server;
    static String url;
    static final List<String> requests = new CopyOnWriteArrayList<>();
    static final String DEVICE = "{\"name\":\"db\",\"state\":\"running\",\"image\":\"/d/db.qcow2\",\"target\":\"qcow2\","
            + "\"frontend\":\"nbd\",\"endpoint\":\"nbd://127.0.0.1:10809/db\",\"endpoints\":[\"nbd://127.0.0.1:10809/db\"],"
            + "\"size\":8589934592,\"readOnly\":false,\"queues\":1,\"depth\":128,\"inflight\":0,\"error\":null}";

    @BeforeAll
    static void start() throws Exception {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", ex -> {
            String body = new String(ex.getRequestBody().readAllBytes(), StandardCharsets.UTF_8);
            requests.add(ex.getRequestMethod() + " " + ex.getRequestURI() + " " + body + " auth=" + ex.getRequestHeaders().getFirst("Authorization"));
            String path = ex.getRequestURI().getPath();
            int status;
            String out;
            String type = "application/json";
            if (ex.getRequestMethod().equals("GET") && path.equals("/devices")) { status = 200; out = "[" + DEVICE + "]"; }
            else if (ex.getRequestMethod().equals("POST") && path.equals("/devices")) { status = 201; out = DEVICE; }
            else if (ex.getRequestMethod().equals("DELETE") && path.equals("/devices/db")) { status = 204; out = ""; }
            else {
                status = 404; type = "application/problem+json";
                out = "{\"title\":\"Not Found\",\"status\":404,\"detail\":\"no device named 'nope'\"}";
            }
            ex.getResponseHeaders().set("Content-Type", type);
            byte[] b = out.getBytes(StandardCharsets.UTF_8);
            ex.sendResponseHeaders(status, b.length == 0 ? -1 : b.length);
            if (b.length > 0) ex.getResponseBody().write(b);
            ex.close();
        });
        server.start();
        url = "http://127.0.0.1:" + server.getAddress().getPort();
    }

    @AfterAll
    static void stop() {
        server.stop(0);
    }

    @Test
    void listAddAndErrors(QuarkusMainLauncher launcher) {
        LaunchResult list = launcher.launch("device", "list", "--url", url);
        assertEquals(0, list.exitCode(), list.getErrorOutput());
        assertTrue(list.getOutput().matches("(?s)NAME +STATE +TARGET +FRONTEND +SIZE +ENDPOINT +IMAGE\\s+db +running +qcow2 +nbd +8 GiB +nbd://127.0.0.1:10809/db +/d/db.qcow2.*"),
                list.getOutput());

        requests.clear();
        LaunchResult add = launcher.launch("device", "add", "db", "--image", "db.qcow2", "--create-size", "8G", "--url", url, "--token", "t0k", "-o", "json");
        assertEquals(0, add.exitCode(), add.getErrorOutput());
        assertEquals(1, requests.size());
        assertEquals("POST /devices {\"name\":\"db\",\"image\":\"db.qcow2\",\"createSize\":\"8G\"} auth=Bearer t0k", requests.getFirst());
        assertTrue(add.getOutput().contains("\"endpoint\" : \"nbd://127.0.0.1:10809/db\""), add.getOutput());

        LaunchResult missing = launcher.launch("device", "recover", "nope", "--url", url);
        assertEquals(1, missing.exitCode());
        assertEquals("qblk: service answered 404: no device named 'nope'", missing.getErrorOutput().strip());

    }
}
