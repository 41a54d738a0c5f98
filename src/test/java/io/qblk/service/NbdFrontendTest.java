package io.qblk.service;

import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.*;
import static org.junit.jupiter.api.Assertions.*;

import io.quarkus.test.junit.QuarkusTest;
import io.restassured.http.ContentType;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** NBD specifics of the service (issue 16): NBD's default export name, non-loopback addresses, readiness. */
@QuarkusTest
class NbdFrontendTest {

    @Test
    void emptyExportNameServesTheDefaultDevice() throws Exception {
        String endpoint = given().get("/devices/default").then().statusCode(200).extract().path("endpoint");
        String noName = endpoint.substring(0, endpoint.length() - "default".length());
        assertTrue(noName.matches("nbd://127\\.0\\.0\\.1:\\d+/"), noName);
        QemuIo.Result r = QemuIo.run(noName.substring(0, noName.length() - 1), "read 0 4k"); // nbd://127.0.0.1:PORT
        assertEquals(0, r.exit(), r.output());
        assertTrue(r.output().contains("read 4096/4096 bytes at offset 0"), r.output());
    }

    @Test
    void nonLoopbackNbdAddressIsRefusedUnlessAllowed() {
        String[] addresses = {"0.0.0.0:0", "[::]:0"};
        for (int i = 0; i < addresses.length; i++) {
            given().contentType(ContentType.JSON)
                    .body(Map.of("name", "open-" + i, "target", "null", "createSize", "1M", "nbdAddress", addresses[i]))
                    .post("/devices").then().statusCode(403).contentType("application/problem+json")
                    .body("detail", containsString("qblk.nbd.allowed-addresses"));
        }
        given().get("/devices").then().statusCode(200).body("name", not(hasItem(startsWith("open-"))));
    }

    @Test
    void readinessIsUpWhileListenersAccept() {
        given().get("/q/health/ready").then().statusCode(200).body("status", is("UP"));
    }
}
