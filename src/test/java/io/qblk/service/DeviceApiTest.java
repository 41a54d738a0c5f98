package io.qblk.service;

import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.*;
import static org.junit.jupiter.api.Assertions.*;

import io.quarkus.test.junit.QuarkusTest;
import io.restassured.http.ContentType;
import io.restassured.response.Response;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The REST API against the real application: images, devices over NBD, errors, health, metrics. */
@QuarkusTest
class DeviceApiTest {
    @jakarta.inject.Inject
    ImageService images;

    /** The image's page-cache use: the device's cache key, else qblk.ublk.cache (none) for ublk, writeback for NBD. */
    @Test
    void cacheModeComesFromTheDeviceElseTheFrontendDefault() {
        Path img = Path.of("/nonexistent/c.qcow2");
        java.util.function.BiFunction<FrontendType, io.qblk.io.CacheMode, io.qblk.io.CacheMode> mode = (f, c) ->
                images.deviceOptions(new DeviceSpec("c", img, io.qblk.target.ImageFormat.QCOW2, f, 1, 8, false, null, 0, c)).cache();
        assertEquals(io.qblk.io.CacheMode.NONE, mode.apply(FrontendType.UBLK, null));
        assertEquals(io.qblk.io.CacheMode.WRITEBACK, mode.apply(FrontendType.UBLK, io.qblk.io.CacheMode.WRITEBACK));
        assertEquals(io.qblk.io.CacheMode.WRITEBACK, mode.apply(FrontendType.NBD, null));
        assertEquals(io.qblk.io.CacheMode.NONE, mode.apply(FrontendType.NBD, io.qblk.io.CacheMode.NONE));
    }

    static final Path DATA = Path.of("target/test-data").toAbsolutePath();
    static final String RUN = Long.toString(System.nanoTime() % 1_000_000_000L, 36);

    static String name(String base) { return base + "-" + RUN; }

    @Test
    void defaultDeviceIsServedOverNbd() throws Exception {
        String endpoint = given().get("/devices/default").then().statusCode(200)
                .body("state", is("running"))
                .body("target", is("qcow2"))
                .body("frontend", is("nbd"))
                .body("size", is(8L << 30))
                .body("image", is(DATA.toRealPath().resolve("default.qcow2").toString()))
                .extract().path("endpoint");
        assertTrue(endpoint.matches("nbd://127\\.0\\.0\\.1:\\d+/default"), endpoint);
        assertFalse(endpoint.contains(":10809/"), "tests must not use the fixed NBD port");
        QemuIo.Result r = QemuIo.run(endpoint, "read 0 4k");
        assertEquals(0, r.exit(), r.output());
    }

    @Test
    void qcow2DeviceLifecycle() throws Exception {
        String image = name("life") + ".qcow2";
        String dev = name("life");
        given().contentType(ContentType.JSON).body(Map.of("path", image, "size", "64M"))
                .post("/images").then().statusCode(201);
        String endpoint = given().contentType(ContentType.JSON).body(Map.of("name", dev, "image", image))
                .post("/devices").then().statusCode(201)
                .header("Location", endsWith("/devices/" + dev))
                .body("state", is("running"))
                .body("size", is(64 << 20))
                .extract().path("endpoint");

        QemuIo.Result w = QemuIo.run(endpoint, "write -P 0xab 0 1M", "write -P 0xcd 32M 64k", "flush");
        assertEquals(0, w.exit(), w.output());
        QemuIo.Result r = QemuIo.run(endpoint, "read -P 0xab 0 1M", "read -P 0xcd 32M 64k", "read -P 0 2M 64k");
        assertEquals(0, r.exit(), r.output());
        assertFalse(r.output().contains("Pattern verification failed"), r.output());

        given().queryParam("path", image).get("/images/info").then().statusCode(200)
                .body(containsString("65536"));
        given().contentType(ContentType.JSON).body(Map.of("path", image)).post("/images/check").then().statusCode(200);
        given().contentType(ContentType.JSON).body(Map.of("path", image, "repair", "all")).post("/images/check")
                .then().statusCode(409).contentType("application/problem+json")
                .body("detail", containsString("served by device '" + dev + "'"));

        String metrics = given().get("/q/metrics").then().statusCode(200).extract().asString();
        assertTrue(counter(metrics, "qblk_io_seconds_count", dev, "write") >= 2, metrics);
        assertTrue(counter(metrics, "qblk_io_bytes_total", dev, "write") >= (1 << 20) + (64 << 10), metrics);
        assertTrue(counter(metrics, "qblk_io_bytes_total", dev, "read") >= (1 << 20) + (64 << 10), metrics);
        assertTrue(metrics.contains("qblk_io_seconds_bucket{device=\"" + dev + "\""), "latency histogram");
        assertTrue(metrics.contains("qblk_io_inflight{device=\"" + dev + "\"}"), "in-flight gauge");
        // Engine meters: the writes above allocated clusters (1M + 64k of 64k clusters, plus an L2
        // table) and the qemu-io flush reached the engine's write-back.
        assertTrue(engine(metrics, "qblk_engine_allocations_total", dev) >= 17, metrics);
        assertTrue(engine(metrics, "qblk_engine_flushes_total", dev) >= 1, metrics);
        assertTrue(engine(metrics, "qblk_engine_datasyncs_total", dev) >= 1, metrics);
        assertTrue(engine(metrics, "qblk_engine_cache_hits_total", dev) >= 1, metrics);

        given().delete("/devices/" + dev).then().statusCode(204);
        given().get("/devices/" + dev).then().statusCode(404).contentType("application/problem+json");
        String after = given().get("/q/metrics").then().extract().asString();
        assertFalse(after.contains("device=\"" + dev + "\""), "meters of a deleted device are removed");

        // Closed cleanly: a fresh check finds no errors, and the data is still there when served again.
        given().contentType(ContentType.JSON).body(Map.of("path", image)).post("/images/check").then().statusCode(200);
        String again = given().contentType(ContentType.JSON).body(Map.of("name", dev, "image", image, "readOnly", true))
                .post("/devices").then().statusCode(201).extract().path("endpoint");
        QemuIo.Result r2 = QemuIo.run(again, "read -P 0xab 0 1M");
        assertEquals(0, r2.exit(), r2.output());
        assertFalse(r2.output().contains("Pattern verification failed"), r2.output());
        given().delete("/devices/" + dev).then().statusCode(204);
    }

    @Test
    void backingFilesObeyTheImageDirectories() throws Exception {
        Path dir = Path.of("target/test-data").toAbsolutePath();
        // A backing file outside the allowed directories, named by an image inside them.
        Path outside = Files.createTempFile("qblk-secret", ".raw");
        try {
            Files.write(outside, new byte[1 << 20]);
            String evil = name("evil") + ".qcow2";
            qemuImg("create", "-q", "-f", "qcow2", "-b", outside.toString(), "-F", "raw", dir.resolve(evil).toString(), "1M");
            byte[] before = Files.readAllBytes(dir.resolve(evil));
            given().contentType(ContentType.JSON).body(Map.of("name", name("evil"), "image", evil))
                    .post("/devices").then().statusCode(422).contentType("application/problem+json")
                    .body("detail", containsString("outside the allowed image directories"));
            given().queryParam("path", evil).get("/images/info").then().statusCode(422)
                    .body("detail", containsString("outside the allowed image directories"));
            given().contentType(ContentType.JSON).body(Map.of("path", evil)).post("/images/check").then().statusCode(422);
            given().get("/devices/" + name("evil")).then().statusCode(404);
            assertArrayEquals(before, Files.readAllBytes(dir.resolve(evil)), "a refused image is left untouched");
        } finally {
            Files.deleteIfExists(outside);
        }

        // A backing file beside the image (relative name) is served through the chain.
        String base = name("base") + ".raw";
        byte[] pattern = new byte[1 << 20];
        java.util.Arrays.fill(pattern, (byte) 0x5a);
        Files.write(dir.resolve(base), pattern);
        String child = name("child") + ".qcow2";
        qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "raw", dir.resolve(child).toString(), "1M");
        String endpoint = given().contentType(ContentType.JSON).body(Map.of("name", name("child"), "image", child))
                .post("/devices").then().statusCode(201).extract().path("endpoint");
        QemuIo.Result r = QemuIo.run(endpoint, "read -P 0x5a 0 1M");
        assertEquals(0, r.exit(), r.output());
        assertFalse(r.output().contains("Pattern verification failed"), r.output());
        given().delete("/devices/" + name("child")).then().statusCode(204);
    }

    /** Issue 16: two devices on one image through a hard link; qemu's tools against a served image. */
    @Test
    void oneImageUnderTwoNamesIsServedOnce() throws Exception {
        String a = name("same") + ".qcow2", b = name("same-link") + ".qcow2";
        given().contentType(ContentType.JSON).body(Map.of("path", a, "size", "64M")).post("/images").then().statusCode(201);
        Files.createLink(DATA.resolve(b), DATA.resolve(a));
        String endpoint = given().contentType(ContentType.JSON).body(Map.of("name", name("same-a"), "image", a))
                .post("/devices").then().statusCode(201).extract().path("endpoint");
        given().contentType(ContentType.JSON).body(Map.of("name", name("same-b"), "image", b))
                .post("/devices").then().statusCode(409).contentType("application/problem+json")
                .body("detail", containsString("already served by device '" + name("same-a") + "'"))
                .body("detail", containsString("the same file"));
        given().contentType(ContentType.JSON).body(Map.of("name", name("same-r"), "image", b, "readOnly", true))
                .post("/devices").then().statusCode(409);
        given().get("/devices/" + name("same-b")).then().statusCode(404);

        QemuIo.Result w = QemuIo.run(endpoint, "write -P 0x6b 0 4M", "flush");
        assertEquals(0, w.exit(), w.output());
        // qemu's tools see the service's lock: no write behind its back, info only with -U.
        Process q = new ProcessBuilder("qemu-io", "-c", "write -P 0x22 0 1M", DATA.resolve(b).toString()).redirectErrorStream(true).start();
        String qout = new String(q.getInputStream().readAllBytes());
        assertNotEquals(0, q.waitFor(), qout);
        assertTrue(qout.contains("Failed to get \"write\" lock"), qout);
        // The service itself still describes and checks the image it serves, under either name.
        given().queryParam("path", b).get("/images/info").then().statusCode(200).body(containsString("67108864"));
        given().contentType(ContentType.JSON).body(Map.of("path", b)).post("/images/check").then().statusCode(200);
        given().contentType(ContentType.JSON).body(Map.of("path", b, "repair", "leaks")).post("/images/check")
                .then().statusCode(409).body("detail", containsString("served by device '" + name("same-a") + "'"));

        given().delete("/devices/" + name("same-a")).then().statusCode(204);
        qemuImg("check", DATA.resolve(a).toString());
        // Another process (qemu-nbd) writing the image: a device on it is refused with its pid.
        Process nbd = io.qblk.io.ImageLockTest.qemuNbd(DATA.resolve(a), DATA, false);
        try {
            given().contentType(ContentType.JSON).body(Map.of("name", name("same-q"), "image", b))
                    .post("/devices").then().statusCode(409).contentType("application/problem+json")
                    .body("detail", containsString("image is in use for writing by another process (pid " + nbd.pid() + ")"));
        } finally {
            io.qblk.io.ImageLockTest.stop(nbd);
        }
        given().get("/devices/" + name("same-q")).then().statusCode(404);
        Process r = new ProcessBuilder("qemu-io", "-r", "-c", "read -P 0x6b 0 4M", DATA.resolve(b).toString()).redirectErrorStream(true).start();
        String rout = new String(r.getInputStream().readAllBytes());
        assertEquals(0, r.waitFor(), rout);
        assertFalse(rout.contains("Pattern verification failed"), rout);
    }

    /** Issue 16 item 6 through the API: each broken refcount structure is rebuilt and ends clean. */
    @Test
    void checkRepairRebuildsBrokenRefcounts() throws Exception {
        String good = name("rc-good") + ".qcow2";
        qemuImg("create", "-q", "-f", "qcow2", DATA.resolve(good).toString(), "64M");
        io.qblk.cli.QemuTools.qemuIo(DATA.resolve(good), false, "write -P 0xab 0 4M", "write -P 0xcd 20M 1M").expect(0);
        for (String damage : io.qblk.cli.ImagePatcher.DAMAGES) {
            String img = name("rc-" + damage) + ".qcow2";
            Files.copy(DATA.resolve(good), DATA.resolve(img));
            try (io.qblk.cli.ImagePatcher p = new io.qblk.cli.ImagePatcher(DATA.resolve(img))) {
                p.damageRefcounts(DATA.resolve(img), damage);
            }
            given().contentType(ContentType.JSON).body(Map.of("path", img)).post("/images/check").then().statusCode(200)
                    .body("clean", is(false)).body("corruptions", greaterThan(0));
            given().contentType(ContentType.JSON).body(Map.of("path", img, "repair", "all")).post("/images/check").then().statusCode(200)
                    .body("clean", is(true)).body("corruptions-fixed", greaterThan(0)).body("$", not(hasKey("corruptions"))).body("$", not(hasKey("leaks")))
                    .body("messages", hasItem(startsWith("Rebuilding refcount structure")));
            qemuImg("check", DATA.resolve(img).toString());
            qemuImg("compare", DATA.resolve(good).toString(), DATA.resolve(img).toString());
        }
    }

    private static void qemuImg(String... args) throws Exception {
        String[] cmd = new String[args.length + 1];
        cmd[0] = "qemu-img";
        System.arraycopy(args, 0, cmd, 1, args.length);
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertEquals(0, p.waitFor(), String.join(" ", cmd) + ": " + out);
    }

    static double engine(String metrics, String metric, String device) {
        String prefix = metric + "{device=\"" + device + "\"}";
        return metrics.lines().filter(l -> l.startsWith(prefix)).mapToDouble(l -> Double.parseDouble(l.substring(prefix.length()).trim()))
                .findFirst().orElse(-1);
    }

    static double counter(String metrics, String metric, String device, String op) {
        String prefix = metric + "{device=\"" + device + "\",op=\"" + op + "\"}";
        return metrics.lines().filter(l -> l.startsWith(prefix)).mapToDouble(l -> Double.parseDouble(l.substring(prefix.length()).trim()))
                .findFirst().orElse(-1);
    }

    @Test
    void rawDeviceReadinessFollowsItsBackingFile() throws Exception {
        String image = name("ready") + ".img";
        String dev = name("ready");
        given().contentType(ContentType.JSON).body(Map.of("path", image, "size", "1M", "format", "raw"))
                .post("/images").then().statusCode(201).body("format", is("raw"));
        given().contentType(ContentType.JSON).body(Map.of("name", dev, "image", image, "target", "raw"))
                .post("/devices").then().statusCode(201);
        given().get("/q/health/ready").then().statusCode(200).body("status", is("UP"));
        Path file = DATA.resolve(image);
        Path moved = DATA.resolve(image + ".moved");
        Files.move(file, moved);
        try {
            given().get("/q/health/ready").then().statusCode(503).body("status", is("DOWN"))
                    .body(containsString("backing file"));
            given().get("/q/health/live").then().statusCode(200);
        } finally {
            Files.move(moved, file);
        }
        given().get("/q/health/ready").then().statusCode(200);
        given().delete("/devices/" + dev).then().statusCode(204);
    }

    @Test
    void problemDetailsForUnknownAndInvalid() {
        given().get("/devices/nope").then().statusCode(404).contentType("application/problem+json")
                .body("status", is(404)).body("title", is("Not Found"))
                .body("detail", is("no device named 'nope'")).body("instance", is("/devices/nope"));
        Response r = given().contentType(ContentType.JSON)
                .body(Map.of("name", "Bad_Name", "image", "x.qcow2", "target", "vhd", "frontend", "iscsi", "queues", 0, "createSize", "lots"))
                .post("/devices");
        r.then().statusCode(400).contentType("application/problem+json")
                .body("errors.field", hasItems("name", "target", "frontend", "queues", "createSize"))
                .body("errors.find { it.field == 'target' }.message", containsString("qcow2, raw, null"))
                .body("errors.find { it.field == 'queues' }.message", containsString("between 1 and 64"));
        given().contentType(ContentType.JSON).body("{\"name\": \"x\", \"bogus\": 1}").post("/devices")
                .then().statusCode(400).contentType("application/problem+json").body("detail", containsString("bogus"));
        given().contentType(ContentType.JSON).body("{not json").post("/devices")
                .then().statusCode(400).contentType("application/problem+json");
        given().contentType(ContentType.JSON).body(Map.of("name", "x", "queues", "many")).post("/devices")
                .then().statusCode(400).contentType("application/problem+json").body("detail", containsString("queues"));
        given().contentType(ContentType.JSON).body(Map.of("path", "big.qcow2", "size", "12Q")).post("/images")
                .then().statusCode(400).body("errors[0].field", is("size"));
        given().contentType(ContentType.JSON).body(Map.of("name", "missing-img", "image", "nothing-here.qcow2")).post("/devices")
                .then().statusCode(400).body("errors[0].field", is("image")).body("errors[0].message", containsString("no such file"));
    }

    @Test
    void ublkWithoutKernelSupportIsUnavailable() {
        org.junit.jupiter.api.Assumptions.assumeFalse(Files.exists(Path.of("/dev/ublk-control")), "this machine has ublk");
        given().contentType(ContentType.JSON).body(Map.of("name", name("ub"), "target", "null", "frontend", "ublk"))
                .post("/devices").then().statusCode(503).contentType("application/problem+json")
                .body("detail", is("frontend ublk is not available: /dev/ublk-control does not exist (modprobe ublk_drv)"));
        given().get("/devices/" + name("ub")).then().statusCode(404);
    }

    /** Issue 16: a chunked body over the 64 KiB limit gets a problem+json 413, and the log no IllegalStateException. */
    @Test
    void aChunkedBodyOverTheLimitGetsAProblem413() throws Exception {
        List<String> logged = java.util.Collections.synchronizedList(new java.util.ArrayList<>());
        java.util.logging.Handler h = new java.util.logging.Handler() {
            @Override public void publish(java.util.logging.LogRecord r) {
                String m = String.valueOf(r.getMessage()) + (r.getThrown() == null ? "" : " " + r.getThrown());
                if (m.contains("IllegalStateException") || m.contains("already been written")) logged.add(m);
            }
            @Override public void flush() {}
            @Override public void close() {}
        };
        java.util.logging.Logger root = java.util.logging.Logger.getLogger("");
        root.addHandler(h);
        try {
            byte[] big = ("{\"path\": \"" + "x".repeat(100_000) + "\", \"size\": \"1M\"}").getBytes();
            var client = java.net.http.HttpClient.newBuilder().version(java.net.http.HttpClient.Version.HTTP_1_1).build();
            var req = java.net.http.HttpRequest.newBuilder(java.net.URI.create("http://127.0.0.1:" + io.restassured.RestAssured.port + "/images"))
                    .header("Content-Type", "application/json")
                    .POST(java.net.http.HttpRequest.BodyPublishers.ofInputStream(() -> new java.io.ByteArrayInputStream(big))).build();
            var resp = client.send(req, java.net.http.HttpResponse.BodyHandlers.ofString());
            assertEquals(413, resp.statusCode(), resp.body());
            assertTrue(resp.headers().firstValue("Content-Type").orElse("").startsWith("application/problem+json"), resp.headers().toString());
            assertTrue(resp.body().contains("\"status\":413") && resp.body().contains("too large"), resp.body());
            Thread.sleep(300);
            assertEquals(List.of(), logged);
            given().get("/devices/default").then().statusCode(200); // and the service still answers
        } finally {
            root.removeHandler(h);
        }
    }

    /** Issue 16: a raw create the file system refuses (EFBIG) leaves no 0-byte file that would make the next create a 409. */
    @Test
    void aFailedRawCreateLeavesNoFileBehind() throws Exception {
        Path probe = Files.createTempFile(DATA, "efbig", ".probe");
        boolean fsRefuses;
        try (var ch = java.nio.channels.FileChannel.open(probe, java.nio.file.StandardOpenOption.WRITE)) {
            ch.position((1L << 60) - 1).write(java.nio.ByteBuffer.wrap(new byte[1]));
            fsRefuses = false;
        } catch (java.io.IOException e) {
            fsRefuses = true;
        } finally {
            Files.deleteIfExists(probe);
        }
        org.junit.jupiter.api.Assumptions.assumeTrue(fsRefuses, "skipped: the file system under " + DATA + " holds 1 EiB files, so no EFBIG to provoke");
        String image = name("huge") + ".raw";
        given().contentType(ContentType.JSON).body(Map.of("path", image, "size", "1E", "format", "raw"))
                .post("/images").then().statusCode(422).contentType("application/problem+json")
                .body("detail", containsString("EFBIG"));
        assertFalse(Files.exists(DATA.resolve(image)), "no file is left behind");
        given().contentType(ContentType.JSON).body(Map.of("path", image, "size", "1M", "format", "raw"))
                .post("/images").then().statusCode(201);
        assertEquals(1 << 20, Files.size(DATA.resolve(image)));
    }

    /** Issue 16: an image with the corrupt bit is served read-only, and GET /devices says why. */
    @Test
    void aCorruptImageIsServedReadOnlyAndSaysWhy() throws Exception {
        String image = name("corrupt") + ".qcow2";
        given().contentType(ContentType.JSON).body(Map.of("path", image, "size", "1M")).post("/images").then().statusCode(201);
        try (io.qblk.cli.ImagePatcher p = new io.qblk.cli.ImagePatcher(DATA.resolve(image))) {
            p.u64(72, p.u64(72) | 2); // incompatible feature bit 1: corrupt
        }
        String dev = name("corrupt");
        given().contentType(ContentType.JSON).body(Map.of("name", dev, "image", image)).post("/devices").then().statusCode(201)
                .body("readOnly", is(true))
                .body("readOnlyReason", containsString("marked corrupt"));
        given().get("/devices").then().statusCode(200)
                .body("find { it.name == '" + dev + "' }.readOnlyReason", containsString("marked corrupt"));
        given().delete("/devices/" + dev).then().statusCode(204);
        given().get("/devices/default").then().statusCode(200).body("readOnly", is(false))
                .body("readOnlyReason", org.hamcrest.Matchers.nullValue());
    }

    @Test
    void imagePathsStayInsideTheAllowedDirectory() throws Exception {
        given().contentType(ContentType.JSON).body(Map.of("path", "../escape.qcow2", "size", "1M"))
                .post("/images").then().statusCode(403).contentType("application/problem+json")
                .body("detail", containsString("'..'"));
        assertFalse(Files.exists(DATA.resolveSibling("escape.qcow2")));
        given().queryParam("path", "/dev/null").get("/images/info").then().statusCode(403)
                .body("detail", containsString("outside the allowed image directories"))
                .body("detail", org.hamcrest.Matchers.not(containsString(DATA.toAbsolutePath().toString())));
        given().contentType(ContentType.JSON).body(Map.of("name", name("devnull"), "image", "/dev/null", "target", "raw"))
                .post("/devices").then().statusCode(400).body("errors[0].field", is("image"))
                .body("errors[0].message", containsString("outside"));

        Path outside = Files.createTempFile("qblk-outside", ".img");
        Path link = DATA.resolve(name("link") + ".img");
        Files.createSymbolicLink(link, outside);
        Path devLink = DATA.resolve(name("devlink") + ".img");
        Files.createSymbolicLink(devLink, Path.of("/dev/zero"));
        try {
            given().queryParam("path", link.getFileName().toString()).get("/images/info").then().statusCode(403)
                    .body("detail", containsString("resolves to a file outside the allowed image directories"))
                    .body("detail", org.hamcrest.Matchers.not(containsString(outside.toRealPath().toString())));
            given().contentType(ContentType.JSON).body(Map.of("path", devLink.getFileName().toString())).post("/images/check")
                    .then().statusCode(403);
            given().contentType(ContentType.JSON).body(Map.of("path", link.getFileName().toString(), "size", "1M"))
                    .post("/images").then().statusCode(409);
        } finally {
            Files.delete(link);
            Files.delete(devLink);
            Files.delete(outside);
        }
        Path sub = Files.createDirectories(DATA.resolve(name("dir")));
        given().queryParam("path", sub.getFileName().toString()).get("/images/info").then().statusCode(400)
                .body("detail", containsString("not a regular file"));
        Files.delete(sub);
    }

    @Test
    void openApiDescribesTheApi() {
        given().get("/q/openapi").then().statusCode(200).body(containsString("/devices/{name}/recover"));
    }
}
