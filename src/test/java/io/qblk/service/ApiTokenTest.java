package io.qblk.service;

import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.*;
import static org.junit.jupiter.api.Assertions.assertFalse;

import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.restassured.http.ContentType;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** With qblk.api.token set, every change needs the bearer token; reads do not. */
@QuarkusTest
@TestProfile(ApiTokenTest.WithToken.class)
class ApiTokenTest {
    static final String TOKEN = "s3cret-t0ken";

    public static class WithToken implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of("qblk.api.token", TOKEN, "qblk.devices.tok.target", "null", "qblk.devices.tok.create-size", "16M");
        }
    }

    @Test
    void mutatingRequestsWithoutTheTokenAreRefusedAndChangeNothing() {
        String image = "tok-" + System.nanoTime() + ".img";
        Map<String, String> create = Map.of("path", image, "size", "1M", "format", "raw");
        given().contentType(ContentType.JSON).body(create).post("/images").then().statusCode(401)
                .contentType("application/problem+json").header("WWW-Authenticate", startsWith("Bearer"))
                .body("detail", containsString("missing Authorization header"));
        given().header("Authorization", "Bearer wrong").contentType(ContentType.JSON).body(create).post("/images")
                .then().statusCode(401).body("detail", is("wrong bearer token"));
        given().header("Authorization", "Basic " + TOKEN).contentType(ContentType.JSON).body(create).post("/images")
                .then().statusCode(401).body("detail", containsString("Bearer scheme"));
        assertFalse(Files.exists(Path.of("target/test-data", image)));

        given().delete("/devices/tok").then().statusCode(401);
        given().post("/devices/tok/recover").then().statusCode(401);
        given().contentType(ContentType.JSON).body(Map.of("name", "other", "target", "null")).post("/devices").then().statusCode(401);
        given().get("/devices").then().statusCode(200).body("name", contains("tok"));

        given().header("Authorization", "Bearer " + TOKEN).contentType(ContentType.JSON).body(create).post("/images")
                .then().statusCode(201);
        given().header("Authorization", "bearer " + TOKEN).post("/devices/tok/recover").then().statusCode(200)
                .body("state", is("running"));
        given().header("Authorization", "Bearer " + TOKEN).delete("/devices/tok").then().statusCode(204);
        given().get("/devices").then().statusCode(200).body("size()", is(0));
    }
}
