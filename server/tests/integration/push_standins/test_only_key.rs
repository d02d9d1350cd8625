//! TEST-ONLY RSA key pair of the fake service account that the FCM stand-in knows. It was
//! generated for these tests (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`),
//! has never belonged to any Google project, and must never be used outside them.

/// TEST-ONLY private key (PKCS#8 PEM), as a service-account file carries it.
pub const TEST_ONLY_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDdLLZVI4l0jePk\n\
LcELym8XH+12KFY4oU8JwnT8z4aTHxMsqOMMOYO+S9HTV+gU4Ky6zqk5unOSS5fp\n\
IydIurU5FE0akaxI9ZBUZaZ84JRjv/yq5ulx1UDwLelEg08ZiMMP8WS5ZIDV1KDW\n\
Ehe24ZJ9hQANufBnLsF/7AkeK/brxBbr7SmgdYvl32/TflV/snB/bK4ynpbl/rdc\n\
cezs/AF7ERmDkmpOHOOUEyQkgos7RiI0fLuGUCdhuj0jSSVAC/ZK23jer6VgZdW6\n\
J0SFH9iNMeEUZB8dtwdHoZ7dVZxLN3bsXoBoMTqphAdoP/LZzO6MT/jzVm1MdYxJ\n\
aHI6/6aXAgMBAAECggEAHIYbrbc7jvCNp2vPLboZwZ24fjiNhhgnnVaax8/rxyWG\n\
z4eoYHc6alxU3zDDGY4wOJdWc798EC33lXWXJ2YM4SOhHgATfAVPa9MAObKs8IBe\n\
EZxeFvQtv8vr/Y4BsYVVwsSa/N3dT7ZwV6tVq5xDzDRO4XZNbsE0606BjoaU/aq6\n\
77xrj+SignavTzaLSkMNM7OpHNQubA1wfV+CXbKKo4mJMCpOStE2G3/mrZZHWPfe\n\
gEahykusXdFZmbZsARbrFyxnyVTaNRAumsZHMCdQFi095S1UgP4UFEDGSkPobQh9\n\
bwWBPiv7MKxvB5DMB3P6Ezn6a/efPiQPYIZwHehqYQKBgQD2ouETf3z4BBOl2WF2\n\
tA1GuKxS1AKKUM6w+GzTi2KGkFYUm2KaK9JEUpEmC1BXWaH/d3Z+MNNZfDFaLpml\n\
JwQEW+22LA2ivuhdE/1uwgBVXrRhf6iSG3E9TL9g9cfoViv4uLyCJOgrGenIAWig\n\
BABofED1Esu9M1VYih2YArG9EwKBgQDlkl2GEPj9UF/JUFGeMhI3/T6yWAcsMnNe\n\
3qDpfRL8+WKN4ajksj0GVkka41/ZhdRfEa1e3Z8CrMhEooq9DazUyvYH0xU+D04c\n\
HlJ7yq4as3pYnfa+nKqtriq8ilGmW/+qjyMD2ILPc0OChX+eq6MK31pSz6OrcNzq\n\
T0pZLf107QKBgQCFExNAcvxZ0dFMHkNxSesT6pbIRi5stPchE5mcdsudcYmQqtqD\n\
9vsH9Eju7xHVX76B2dJseim/UbxLPXOXYbrQI03aimB9HGbBugR3W2PUrDnFlZy9\n\
4OKzwZJNXbAUU1J8bCkCS6mdf+jdCq2KET6rIcfms9KMboMxN6yKFYITUwKBgQCn\n\
ODLpacmD8pyi7d9VpNFCeTPHAnnPBrykuPNqv9Ep9ZmFEX9NfksXJ5i+fiqeLm5g\n\
BWdMd4/QifyiiecXCDQBGAmX73hEqS9TKf8Y7qxdBKi0jfNiKonkUr4McZBB5jdX\n\
jEWMEpRN+X6OPyGTeSAc1k5bjaWBRoeUIMdeKDK7jQKBgB+WsLjdG3Cjs1Sl6tuQ\n\
nykWt2To+7SW2oPaWxaRP7B8d9G/TXfsjB3wqBlmxAr9Ghdka8KZz9FbdvqSqQNr\n\
hyMwEhWZ2zn/W7wYorolX5xaIl+kDk1byYHtqFP574IlrEoftdOCj0r8AdXkY1pV\n\
BAjo4Ic4jXMcbyUaLopzy0/Y\n\
-----END PRIVATE KEY-----\n\
";

/// Its public key (SPKI PEM): what the stand-in token endpoint verifies assertions with.
pub const TEST_ONLY_PUBLIC_KEY_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA3Sy2VSOJdI3j5C3BC8pv\n\
Fx/tdihWOKFPCcJ0/M+Gkx8TLKjjDDmDvkvR01foFOCsus6pObpzkkuX6SMnSLq1\n\
ORRNGpGsSPWQVGWmfOCUY7/8qubpcdVA8C3pRINPGYjDD/FkuWSA1dSg1hIXtuGS\n\
fYUADbnwZy7Bf+wJHiv268QW6+0poHWL5d9v035Vf7Jwf2yuMp6W5f63XHHs7PwB\n\
exEZg5JqThzjlBMkJIKLO0YiNHy7hlAnYbo9I0klQAv2Stt43q+lYGXVuidEhR/Y\n\
jTHhFGQfHbcHR6Ge3VWcSzd27F6AaDE6qYQHaD/y2czujE/481ZtTHWMSWhyOv+m\n\
lwIDAQAB\n\
-----END PUBLIC KEY-----\n\
";
