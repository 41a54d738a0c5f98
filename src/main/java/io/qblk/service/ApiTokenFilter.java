package io.qblk.service;

import jakarta.inject.Inject;
import jakarta.ws.rs.container.ContainerRequestContext;
import jakarta.ws.rs.core.Response;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.List;
import java.util.Set;
import org.jboss.resteasy.reactive.server.ServerRequestFilter;

/**
 * When {@code qblk.api.token} is set, every mutating request (POST, PUT, PATCH, DELETE) must carry
 * {@code Authorization: Bearer <token>}; otherwise it is refused with 401 before any resource runs.
 */
public class ApiTokenFilter {
    private static final Set<String> MUTATING = Set.of("POST", "PUT", "PATCH", "DELETE");

    @Inject QblkConfig config;

    @ServerRequestFilter(preMatching = true)
    public Response check(ContainerRequestContext ctx) {
        var token = config.api().token().filter(t -> !t.isEmpty());
        if (token.isEmpty() || !MUTATING.contains(ctx.getMethod())) return null;
        String header = ctx.getHeaderString("Authorization");
        String why;
        if (header == null) why = "missing Authorization header: this service requires 'Authorization: Bearer <token>' for changes";
        else if (!header.regionMatches(true, 0, "Bearer ", 0, 7)) why = "Authorization header must use the Bearer scheme";
        else if (!MessageDigest.isEqual(header.substring(7).trim().getBytes(StandardCharsets.UTF_8), token.get().getBytes(StandardCharsets.UTF_8)))
            why = "wrong bearer token";
        else return null;
        Response r = ProblemMappers.problem(401, "Unauthorized", why, "/" + ctx.getUriInfo().getPath().replaceFirst("^/", ""), List.of());
        return Response.fromResponse(r).header("WWW-Authenticate", "Bearer realm=\"qblk\"").build();
    }
}
