const http = require("http");
http.createServer((req, res) => res.end("web")).listen(3000);
